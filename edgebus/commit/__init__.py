"""Strong commits: two-phase commit of strong writes across their placement on the
commit log (``edgebus.<log region>.saga``): coordinators, participants, the client that
submits and awaits a decision, and the log's history for operators."""
