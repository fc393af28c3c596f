"""Multi-step sagas with compensations: steps run in order, a failed step undoes the
ones before it, newest first; progress is logged on ``edgebus.<log region>.sagas`` so a
crashed host resumes them (:class:`edgebus.sagas.runner.SagaRunner`)."""
