"""Per-domain presets of the paper's protocol (ALGORITHM.md §12) and the QAM paper's values.

Sources: H, discount, rho and network width per domain follow ALGORITHM.md §1, §4 and §12; QAM's
inverse temperatures are the values the QAM paper published per domain. TRQAM's per-domain budget
is not public: 1.0 by default and 0.5 for cube-triple (stated in the paper); 2.0 for puzzle-4x4 is
our choice for "a looser budget".
"""

PAPER_DOMAINS = (
    "antmaze-large-navigate",
    "antmaze-giant-navigate",
    "humanoidmaze-medium-navigate",
    "humanoidmaze-large-navigate",
    "scene-play",
    "puzzle-3x3-play",
    "puzzle-4x4-play",
    "cube-double-play",
    "cube-triple-play",
    "cube-quadruple-play",
)
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
        "kl_budget": TRQAM_KL_BUDGET.get(domain, 1.0),
        "inv_temp": QAM_INV_TEMP.get(domain, 1.0),
    }
    if domain in _LARGE_DATA:
        overrides.update(actor_hidden_dims=(1024,) * 4, actor_layer_norm=True)
    return overrides


def data_overrides(domain: str) -> dict:
    """Data settings of `domain`: sparse rewards for scene and the puzzles (QAM protocol)."""
    check_domain(domain)
    return {"sparse": domain in _SPARSE}
