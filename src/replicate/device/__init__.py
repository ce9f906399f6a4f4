"""The lent GPU call (``replicate device-run``) and its return: the call's folder and clock (call), its
first checks (preflight), its measurements (checks), the call itself (run) and `ingest`, which merges what
it wrote into results/."""
