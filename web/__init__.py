"""`imgd web`: a local photo gallery in the browser, a separate process that asks the daemon (or answers itself)."""
