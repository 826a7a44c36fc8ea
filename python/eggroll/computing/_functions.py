"""Wrappers that give FATE's functions the semantics of FATE's own engine where eggroll-rs's
primitives differ. They are pickled with the function and run in the eggs."""


class FirstPerKey:
    """A map whose output is shuffled without a reducer keeps, per source partition, the
    first value it gives each key (as FATE's standalone engine does)."""

    def __init__(self, op):
        self.op = op

    def __call__(self, index, pairs):
        first = {}
        for k, v in self.op(index, pairs):
            if k not in first:
                first[k] = v
        return first.items()


class FoldPartition:
    """A reduce's share of one partition, folded in Python in key order: one pair, keyed by
    the partition's index (big-endian, so that key order is partition order), or none for an
    empty partition."""

    def __init__(self, reducer):
        self.reducer = reducer

    def __call__(self, index, pairs):
        acc = None
        first = True
        reduce = self.reducer
        for _, v in pairs:
            acc = v if first else reduce(acc, v)
            first = False
        return [] if first else [(index.to_bytes(4, "big"), acc)]


class FoldTagged:
    """The fold of an ordered shuffle (`Table.map_reduce_folding`): a partition's pairs come
    in FATE standalone's fold order (source partition, then the order the map gave them),
    each key behind a tag of `tag_bytes`; each key's values are folded left to right, as
    that engine folds them, in one call per partition rather than one per pair."""

    def __init__(self, reducer, tag_bytes):
        self.reducer = reducer
        self.tag_bytes = tag_bytes

    def __call__(self, index, pairs):
        folded = {}
        reduce, tag = self.reducer, self.tag_bytes
        for tagged, v in pairs:
            k = tagged[tag:]
            acc = folded.get(k)
            folded[k] = v if acc is None else reduce(acc, v)
        return folded.items()
