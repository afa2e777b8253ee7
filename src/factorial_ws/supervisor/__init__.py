"""Starting and watching processes: `up` (the whole system), several gateway processes on one
port, and the private Redis server."""
