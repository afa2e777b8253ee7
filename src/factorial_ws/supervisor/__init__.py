"""Starting and watching processes: `up` (the whole system), several gateway processes on one
port, and the private Redis server; ``processes.py`` and ``probes.py`` are the toolkit they, the
benchmark and the tests share."""
