"""Study tooling: scripts that make the data sets, runs and tables of docs/results.md; not part of the package."""
