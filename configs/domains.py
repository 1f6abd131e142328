"""Per-domain presets of the paper's protocol and the QAM paper's values.

Sources: H, discount, rho and network width per domain follow the TRQAM paper's protocol; QAM's
inverse temperatures are the values the QAM paper published per domain. TRQAM's per-domain budget
is not public: 1.0 by default and 0.5 for cube-triple (stated in the paper); 2.0 for puzzle-4x4 is
our choice for "a looser budget".

Baselines (issue 5):
- QAM-E (inv_temp, edit_scale): the QAM paper's per-domain values, as in the `QAM_EDIT` table of
  its public code (github.com/ColinQiyangLi/qam, experiments/reproduce.py).
- Chunked FQL alpha: the QAM paper's per-domain values (same file, `FQL` table); the rest of the
  chunked preset is this protocol (H, discount, rho, 10 critics, widths).
- Original FQL: the FQL paper's values (arXiv 2502.02538; the commands of github.com/seohongpark/fql
  README): alpha antmaze 10 with q_agg=min, humanoidmaze 30, cube 300, scene 300, puzzle 1000;
  discount 0.995 for antmaze-giant and humanoidmaze, else 0.99; 2 critics, H = 1, 4x512 networks.
  The FQL paper has no cube-triple / cube-quadruple: 300 there is our extrapolation of "cube".
- cube-single-play (the quickstart, not in the QAM paper): chunked FQL 300 (FQL paper's value for
  cube-single) and QAM-E as cube-double (our choice, the nearest domain).

Baselines (issue 16), each the QAM paper's per-domain value as in the tables of its public code
(github.com/ColinQiyangLi/qam, experiments/reproduce.py: `IFQL`, `DSRL`, `CGQL`, `CGQL_MSE`,
`CGQL_LINEX`); the rest of each preset is this protocol (H, discount, rho, 10 critics, widths).
cube-single-play takes cube-double's values (our choice, the nearest domain).
- IFQL kappa (the value's expectile).
- DSRL noise_scale (the scale of the latent policy's noise).
- CGQL inv_temp, guidance_coef and (mse / linex) noisy_coef, per variant; inv_temp is 10 in every
  domain and variant.
"""

from trqam_jax.data.names import PAPER_DOMAINS

# Not in the paper's table, but cheap to generate locally: the quickstart's domain.
EXTRA_DOMAINS = ("cube-single-play",)

_LOCOMOTION = ("antmaze", "humanoidmaze")
# Domains trained on the 10M / 100M releases use 1024-wide vector fields with LayerNorm.
_LARGE_DATA = (
    "antmaze-giant-navigate",
    "puzzle-4x4-play",
    "cube-triple-play",
    "cube-quadruple-play",
)
_SPARSE = ("scene-play", "puzzle-3x3-play", "puzzle-4x4-play")

QAM_INV_TEMP = {
    "antmaze-large-navigate": 10.0,
    "antmaze-giant-navigate": 3.0,
    "humanoidmaze-medium-navigate": 3.0,
    "humanoidmaze-large-navigate": 3.0,
    "cube-double-play": 1.0,
    "cube-triple-play": 3.0,
    "cube-quadruple-play": 1.0,
    "scene-play": 1.0,
    "puzzle-3x3-play": 3.0,
    "puzzle-4x4-play": 30.0,
}
TRQAM_KL_BUDGET = {"cube-triple-play": 0.5, "puzzle-4x4-play": 2.0}

# (inv_temp, edit_scale) of QAM-E; edit_scale 0 makes QAM-E act as QAM.
QAM_E_PARAMS = {
    "antmaze-large-navigate": (1.0, 0.1),
    "antmaze-giant-navigate": (10.0, 0.1),
    "humanoidmaze-medium-navigate": (3.0, 0.1),
    "humanoidmaze-large-navigate": (3.0, 0.1),
    "cube-double-play": (1.0, 0.0),
    "cube-triple-play": (3.0, 0.1),
    "cube-quadruple-play": (3.0, 0.1),
    "scene-play": (1.0, 0.0),
    "puzzle-3x3-play": (1.0, 0.1),
    "puzzle-4x4-play": (0.1, 0.9),
    "cube-single-play": (1.0, 0.0),  # our choice: as cube-double
}
FQL_CHUNKED_ALPHA = {
    "antmaze-large-navigate": 3.0,
    "antmaze-giant-navigate": 3.0,
    "humanoidmaze-medium-navigate": 30.0,
    "humanoidmaze-large-navigate": 30.0,
    "cube-double-play": 300.0,
    "cube-triple-play": 30.0,
    "cube-quadruple-play": 100.0,
    "scene-play": 300.0,
    "puzzle-3x3-play": 300.0,
    "puzzle-4x4-play": 1.0,
    "cube-single-play": 300.0,  # our choice: the FQL paper's cube-single value
}
# The original FQL's alpha by domain family (FQL paper); antmaze also uses q_agg="min".
FQL_ORIGINAL_ALPHA = {
    "antmaze": 10.0,
    "humanoidmaze": 30.0,
    "cube": 300.0,
    "scene": 300.0,
    "puzzle": 1000.0,
}
FQL_PRESETS = ("original", "chunked")
IFQL_KAPPA = {
    "antmaze-large-navigate": 0.9,
    "antmaze-giant-navigate": 0.8,
    "humanoidmaze-medium-navigate": 0.7,
    "humanoidmaze-large-navigate": 0.8,
    "cube-double-play": 0.9,
    "cube-triple-play": 0.95,
    "cube-quadruple-play": 0.95,
    "scene-play": 0.9,
    "puzzle-3x3-play": 0.95,
    "puzzle-4x4-play": 0.9,
    "cube-single-play": 0.9,  # our choice: as cube-double
}
DSRL_NOISE_SCALE = {
    "antmaze-large-navigate": 0.8,
    "antmaze-giant-navigate": 1.2,
    "humanoidmaze-medium-navigate": 0.6,
    "humanoidmaze-large-navigate": 0.8,
    "cube-double-play": 1.0,
    "cube-triple-play": 1.4,
    "cube-quadruple-play": 1.4,
    "scene-play": 0.4,
    "puzzle-3x3-play": 1.0,
    "puzzle-4x4-play": 1.0,
    "cube-single-play": 1.0,  # our choice: as cube-double
}
# CGQL (guidance_coef, noisy_coef) per variant; "simple" has no noisy-chunk loss.
CGQL_PARAMS = {
    "simple": {
        "antmaze-large-navigate": (0.1, 0.0),
        "antmaze-giant-navigate": (0.1, 0.0),
        "humanoidmaze-medium-navigate": (0.01, 0.0),
        "humanoidmaze-large-navigate": (0.01, 0.0),
        "cube-double-play": (0.01, 0.0),
        "cube-triple-play": (0.1, 0.0),
        "cube-quadruple-play": (0.1, 0.0),
        "scene-play": (0.1, 0.0),
        "puzzle-3x3-play": (0.1, 0.0),
        "puzzle-4x4-play": (0.1, 0.0),
    },
    "mse": {
        "antmaze-large-navigate": (0.1, 0.1),
        "antmaze-giant-navigate": (0.1, 0.001),
        "humanoidmaze-medium-navigate": (0.1, 0.1),
        "humanoidmaze-large-navigate": (0.1, 0.1),
        "cube-double-play": (0.01, 0.001),
        "cube-triple-play": (0.1, 0.001),
        "cube-quadruple-play": (0.01, 0.1),
        "scene-play": (0.1, 0.1),
        "puzzle-3x3-play": (0.1, 0.1),
        "puzzle-4x4-play": (1.0, 0.001),
    },
    "linex": {
        "antmaze-large-navigate": (0.1, 0.001),
        "antmaze-giant-navigate": (0.1, 0.001),
        "humanoidmaze-medium-navigate": (0.1, 0.1),
        "humanoidmaze-large-navigate": (0.1, 0.1),
        "cube-double-play": (0.01, 0.001),
        "cube-triple-play": (0.1, 0.001),
        "cube-quadruple-play": (0.01, 0.1),
        "scene-play": (0.1, 0.1),
        "puzzle-3x3-play": (0.1, 0.001),
        "puzzle-4x4-play": (1.0, 0.001),
    },
}
CGQL_INV_TEMP = 10.0


def check_domain(domain: str) -> None:
    """Raise a ValueError naming the known domains if `domain` is not one of them."""
    known = PAPER_DOMAINS + EXTRA_DOMAINS
    if domain not in known:
        raise ValueError(
            f"unknown domain {domain!r}; pick one of: {', '.join(known)} "
            "(e.g. --config=configs/trqam.py:cube-double-play)"
        )


def agent_overrides(domain: str) -> dict:
    """Agent settings of `domain` shared by every agent (chunking, discount, pessimism, width)."""
    check_domain(domain)
    humanoid = domain.startswith("humanoidmaze")
    overrides = {
        "horizon": 1 if domain.startswith(_LOCOMOTION) else 5,
        "discount": 0.999 if humanoid else 0.995,
        "rho": 0.0 if humanoid else 0.5,
    }
    if domain in _LARGE_DATA:
        overrides.update(actor_hidden_dims=(1024,) * 4, actor_layer_norm=True)
    return overrides


def trqam_overrides(domain: str) -> dict:
    """TRQAM's per-domain KL budget (1.0 where the paper states none)."""
    check_domain(domain)
    return {"kl_budget": TRQAM_KL_BUDGET.get(domain, 1.0)}


def qam_overrides(domain: str) -> dict:
    """QAM's per-domain inverse temperature (1.0 off the QAM paper's domains)."""
    check_domain(domain)
    return {"inv_temp": QAM_INV_TEMP.get(domain, 1.0)}


def data_overrides(domain: str) -> dict:
    """Data settings of `domain`: sparse rewards for scene and the puzzles (QAM protocol)."""
    check_domain(domain)
    return {"sparse": domain in _SPARSE}


def qam_e_overrides(domain: str) -> dict:
    """QAM-E's per-domain inverse temperature and edit scale (replace QAM's inv_temp)."""
    check_domain(domain)
    inv_temp, edit_scale = QAM_E_PARAMS[domain]
    return {"inv_temp": inv_temp, "edit_scale": edit_scale}


def fql_overrides(domain: str, preset: str) -> dict:
    """FQL's per-domain settings; applied after `agent_overrides`, so they win over it.

    "chunked" keeps this protocol's chunking, discount, pessimism and widths and sets alpha;
    "original" restores the FQL paper's setting (single actions, 2 critics, its discounts,
    4x512 networks, target aggregation by q_agg instead of mean - rho * std).
    """
    check_domain(domain)
    if preset == "chunked":
        return {"alpha": FQL_CHUNKED_ALPHA[domain]}
    if preset != "original":
        raise ValueError(f"unknown FQL preset {preset!r}; expected one of {FQL_PRESETS}")
    family = domain.split("-")[0]
    return {
        "alpha": FQL_ORIGINAL_ALPHA[family],
        "q_agg": "min" if family == "antmaze" else "mean",
        "horizon": 1,
        "num_qs": 2,
        "rho": 0.0,
        "discount": 0.995
        if domain == "antmaze-giant-navigate" or family == "humanoidmaze"
        else 0.99,
        "actor_hidden_dims": (512,) * 4,
        "actor_layer_norm": False,
    }


def ifql_overrides(domain: str) -> dict:
    """IFQL's per-domain expectile kappa."""
    check_domain(domain)
    return {"kappa": IFQL_KAPPA[domain]}


def dsrl_overrides(domain: str) -> dict:
    """DSRL's per-domain noise scale."""
    check_domain(domain)
    return {"noise_scale": DSRL_NOISE_SCALE[domain]}


def cgql_overrides(domain: str, mode: str) -> dict:
    """CGQL's variant and its per-domain inverse temperature, guidance and noisy-loss weights."""
    check_domain(domain)
    if mode not in CGQL_PARAMS:
        raise ValueError(
            f"unknown CGQL variant {mode!r}; expected one of {tuple(CGQL_PARAMS)} "
            "(e.g. --config=configs/cgql.py:scene-play:mse)"
        )
    # cube-single-play (the quickstart's) takes cube-double's values: our choice.
    guidance_coef, noisy_coef = CGQL_PARAMS[mode].get(domain, CGQL_PARAMS[mode]["cube-double-play"])
    return {
        "mode": mode,
        "inv_temp": CGQL_INV_TEMP,
        "guidance_coef": guidance_coef,
        "noisy_coef": noisy_coef,
    }
