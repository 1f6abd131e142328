"""The rows sweep the hparam each agent declares (`SWEPT`): QAM's inv_temp through the launcher
as TRQAM's kl_budget; an agent that sweeps nothing refuses `kl_budgets`."""

import numpy as np
import pytest

from configs.fql import get_config as fql_config
from configs.qam import get_config as qam_config
from tests.runs import tiny_run_config
from trqam_jax import experiment


def test_qam_rows_carry_their_own_inv_temp(tiny_dataset_dir, tmp_path):
    config = tiny_run_config(tiny_dataset_dir, tmp_path / "qam", get=qam_config)
    config.kl_budgets = (1.0, 3.0)
    prepared = experiment.prepare(config)
    rows = prepared.rows
    assert len(rows) == 4  # 2 values x 2 seeds
    states = experiment.initial_states(prepared)
    set_values = np.asarray(states.hparams["inv_temp"])
    np.testing.assert_array_equal(set_values, rows.swept["inv_temp"])
    assert sorted(set(set_values.tolist())) == [1.0, 3.0]
    assert not (tmp_path / "qam").exists()  # prepare writes nothing


def test_an_agent_that_sweeps_nothing_refuses_kl_budgets(tiny_dataset_dir, tmp_path):
    config = tiny_run_config(tiny_dataset_dir, tmp_path / "fql", get=fql_config, kl_budgets=(1.0,))
    with pytest.raises(experiment.ConfigError, match=r"fql sweeps no hparam.*leave it empty"):
        experiment.check_config(config)
