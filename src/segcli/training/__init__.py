"""What `segcli train` adds around Lightning's fit: checkpoints written atomically and resumable
(checkpoints, resume), progress and logs (callbacks, loggers), the training-curve figure (curves),
the end-of-training evaluation through `segcli eval`'s code (final_eval), and sweeps (sweep)."""
