"""Dataset-scale attribution: a whole dataset through one method, sharded over ranks, into an on-disk store.

One concept per module: :mod:`.methods` (which method, with which settings),
:mod:`.manifest` (what a store was made with, and refusing to mix settings),
:mod:`.sharding` (ranks, chunks, who computes what), :mod:`.chunk` (one batch in, its
chunk of results out), :mod:`.store` (the zarr
store: writing chunks, reading them back), :mod:`.progress` (the job's bar on
rank 0) and :mod:`.runner` (``attribute_dataset``).
"""
