"""What did the world model learn? Small analyses of a run folder, each writing pictures (see analyze.py)."""
