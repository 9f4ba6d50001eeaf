"""(median, min) seconds and saved bytes collected during one benchmark run, by shape."""

RESULTS: dict = {}
