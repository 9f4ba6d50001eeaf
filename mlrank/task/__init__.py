"""The task as the field poses it, shared by every method: manipulation sequences, their targets and
the scores they are read from (``sequences``), and the field's metrics (``metrics``)."""
