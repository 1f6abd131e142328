"""FQL, chunked preset: `--config=configs/fql_chunked.py[:DOMAIN]`.

The FQL baseline of the QAM and TRQAM papers: this protocol's chunks (H = 5 on manipulation),
discount and pessimism, 10 critics with target mean - rho * std and a gamma^H bootstrap, plain
Adam, and the QAM paper's alpha per domain (configs/domains.py).
"""

from configs.fql import fql_run_config


def get_config(domain=None):
    return fql_run_config("chunked", domain)
