"""A benchmark part's time budget, and how the suite records what failed inside it."""

import time


class Budget:
    """A part's time budget in seconds, counted from its creation."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def refuses(self, estimate_s: float) -> str | None:
        """Why a point of about `estimate_s` seconds must be skipped, or None if it fits."""
        if estimate_s < self.left():
            return None
        return (
            f"budget: {max(self.left(), 0.0):.0f} s left of {self.seconds:.0f} s, the point "
            f"would take about {estimate_s:.0f} s"
        )


def describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip()[:600]}"


def out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()
