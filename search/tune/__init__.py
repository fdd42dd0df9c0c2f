"""Everything in segtune that imports Ray, in one place (a test enforces it):

    layout.py      Ray-free: Tune's folders and segtune's checkpoint file names, the one reader of a trial folder
    session.py     the Ray session (start a local Ray or join a cluster) as a context manager; cluster checks
    trainable.py   one trial = one seg.trainer.Trainer under Tune, a checkpoint per epoch, retry rules
    recorder.py    the driver-side Tune callback that keeps segtune's trial records and is handed the table writer
    searchers.py   Optuna TPE (seeded with the fixed trials) and the ASHA scheduler
    passes.py      the three Tune passes: fixed trials, searched trials, seed reruns

Nothing is imported here, so `import search.tune.searchers` costs only what that module needs.
"""
