"""A budget split over rounds (cdcda_active spreads cdcda's candidates and optimiser steps
over `augment.rounds`): the server and the device must split it the same way."""


def share(total: int, r: int, rounds: int) -> int:
    """Round r's share of `total`: equal parts, the rest one each to the earliest rounds."""
    return total // rounds + (1 if r < total % rounds else 0)
