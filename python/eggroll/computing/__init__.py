"""Computing: `runtime_init`, the roll-pair context and `RollPair`, as FATE's eggroll computing
back end calls them. Keys and values are bytes FATE serialized; a table keeps FATE's serdes
and partitioner codes, and places keys with FATE's partitioner (mmh3 or integer) natively.

Functions run in this process, partition after partition, each partition on its own copy of
the function (as each would run in an egg of its own: a stateful function starts afresh per
partition). Partitions are read and written by eggroll-rs, with Python's lock released.
"""

import heapq

import cloudpickle

from eggroll import _native

IN_MEMORY = "IN_MEMORY"


class Store:
    """What `RollPair.get_store()` answers: the table's FATE codes and partition count."""

    def __init__(self, table):
        self.key_serdes_type = table.key_serdes_type
        self.value_serdes_type = table.value_serdes_type
        self.partitioner_type = table.partitioner_type
        self.num_partitions = table.partitions
        self.namespace = table.namespace
        self.name = table.name
        self.store_type = table.store_type


class RollPairContext:
    """Makes and loads the tables of one session."""

    def __init__(self, session):
        self._session = session
        self._ctx = session.native

    @property
    def session(self):
        return self._session

    @property
    def session_id(self):
        return self._session.get_session_id()

    def _create(self, partitions, key_serdes_type, value_serdes_type, partitioner_type,
                namespace=None, name=None, store_type=IN_MEMORY):
        t = self._ctx.create(
            int(partitions),
            namespace=namespace or self.session_id,
            name=name,
            store_type=store_type,
            key_serdes_type=int(key_serdes_type),
            value_serdes_type=int(value_serdes_type),
            partitioner_type=int(partitioner_type),
        )
        return RollPair(t, self)

    def parallelize(self, data, total_partitions, partitioner=None, partitioner_type=0,
                    key_serdes_type=0, value_serdes_type=0, options=None):
        """A new in-memory table of `data`, (key bytes, value bytes) pairs."""
        rp = self._create(total_partitions, key_serdes_type, value_serdes_type, partitioner_type)
        rp._t.put_all(data)
        return rp

    def load_rp(self, namespace, name, store_type=None):
        """The persistent table `namespace/name`, or None."""
        t = self._ctx.load(namespace, name)
        return None if t is None else RollPair(t, self)

    def cleanup(self, name, namespace):
        """Destroys the persistent tables of `namespace` whose names match `name` (a glob)."""
        return self._ctx.cleanup(namespace, name)

    def info(self):
        return {"session_id": self.session_id, "engine": "eggroll-rs"}


def runtime_init(session):
    """The roll-pair context of `session`."""
    return RollPairContext(session)


def _copies(func):
    """Makes a fresh copy of `func` per call, as a process of its own would unpickle it."""
    if func is None:
        return lambda: None
    blob = cloudpickle.dumps(func)
    return lambda: cloudpickle.loads(blob)


def _partition_of(key, n, partitioner_type):
    return _native.partition_of(key, n, partitioner_type)


class RollPair:
    """A table of (key bytes, value bytes) pairs."""

    def __init__(self, table, ctx):
        self._t = table
        self._ctx = ctx
        self._store = Store(table)

    def __getstate__(self):
        raise TypeError("a RollPair cannot be pickled: pass the data, not the table, to functions")

    def __del__(self):
        # FATE makes hundreds of intermediate tables per job and drops them: an in-memory
        # table no longer referenced is destroyed at once (a persistent one stays). Each
        # RollPair is the only one of its in-memory store, so no other can still need it.
        t = getattr(self, "_t", None)
        if t is None or t.destroyed or self._store.store_type != IN_MEMORY:
            return
        if self._ctx.session.is_stopped():
            return
        try:
            t.destroy()
        except Exception:  # a destructor must not raise; the session's end frees it anyway
            pass

    def __repr__(self):
        return f"<RollPair {self._store.namespace}/{self._store.name} ({self._store.num_partitions} partitions)>"

    @property
    def ctx(self):
        return self._ctx

    @property
    def destroyed(self):
        return self._t.destroyed

    def get_store(self):
        return self._store

    def get_partitions(self):
        return self._store.num_partitions

    @property
    def num_partitions(self):
        return self._store.num_partitions

    def get_name(self):
        return self._store.name

    def get_namespace(self):
        return self._store.namespace

    def get_store_type(self):
        return self._store.store_type

    # Storage.

    def get(self, k, partitioner=None):
        return self._t.get(k)

    def put(self, k, v, partitioner=None):
        self._t.put(k, v)
        return True

    def delete(self, k, partitioner=None):
        return self._t.delete(k)

    def put_all(self, kv_list, partitioner=None):
        return self._t.put_all(kv_list)

    def get_all(self, limit=None):
        """Every pair in the byte order of the keys across partitions (each partition is
        sorted; they are merged)."""
        n = self.num_partitions
        pairs = heapq.merge(*[self._t.partition(p) for p in range(n)]) if n > 1 else iter(self._t.partition(0))
        if limit is not None:
            return [kv for _, kv in zip(range(limit), pairs)]
        return pairs

    def count(self):
        return self._t.count()

    def take(self, num, options=None, **kwargs):
        """The first `num` pairs in key byte order: the first `num` of each partition, merged."""
        if num <= 0:
            raise ValueError(f"take needs a positive count, not {num}")
        heads = [self._t.head(p, num) for p in range(self.num_partitions)]
        return [kv for _, kv in zip(range(num), heapq.merge(*heads))]

    def destroy(self):
        return self._t.destroy()

    def copy_as(self, name, namespace, store_type=None):
        return RollPair(self._t.copy_as(namespace, name, store_type), self._ctx)

    # Computing.

    def map_reduce_partitions_with_index(
        self,
        map_partition_op,
        reduce_partition_op,
        shuffle,
        input_key_serdes=None,
        input_key_serdes_type=0,
        input_value_serdes=None,
        input_value_serdes_type=0,
        input_partitioner=None,
        input_partitioner_type=0,
        output_key_serdes=None,
        output_key_serdes_type=0,
        output_value_serdes=None,
        output_value_serdes_type=0,
        output_partitioner=None,
        output_partitioner_type=0,
        output_num_partitions=None,
        output_namespace=None,
        output_name=None,
        output_store_type=None,
    ):
        """Maps each partition with its index; with `shuffle`, pairs move to the partition of
        their key, and values of one key are combined by `reduce_partition_op` (source
        partitions in order, each in the order the map made them); without, a partition's
        output stays in it.

        Without a reducer a key's value is, as on FATE's standalone engine, the first the map
        of the last source partition that made the key gave."""
        n_in = self.num_partitions
        n_out = int(output_num_partitions or n_in)
        out = self._ctx._create(
            n_out,
            output_key_serdes_type,
            output_value_serdes_type,
            output_partitioner_type,
            namespace=output_namespace,
            name=output_name,
            store_type=output_store_type or IN_MEMORY,
        )
        mapper = _copies(map_partition_op)
        if not shuffle:
            if n_out != n_in:
                raise ValueError(f"a map without shuffle keeps {n_in} partitions, not {n_out}")
            for p in range(n_in):
                out._t.put_partition(p, list(mapper()(p, iter(self._t.partition(p)))))
            return out
        buckets = [{} for _ in range(n_out)]
        for p in range(n_in):
            mapped = mapper()(p, iter(self._t.partition(p)))
            if reduce_partition_op is None:
                first = {}
                for k, v in mapped:
                    first.setdefault(k, v)
                for k, v in first.items():
                    buckets[_partition_of(k, n_out, output_partitioner_type)][k] = v
                continue
            for k, v in mapped:
                bucket = buckets[_partition_of(k, n_out, output_partitioner_type)]
                bucket[k] = reduce_partition_op(bucket[k], v) if k in bucket else v
        for p, bucket in enumerate(buckets):
            if bucket:
                out._t.put_partition(p, list(bucket.items()))
        return out

    def binary_sorted_map_partitions_with_index(
        self,
        other,
        binary_map_partitions_with_index_op,
        key_serdes=None,
        key_serdes_type=0,
        partitioner=None,
        partitioner_type=0,
        first_input_value_serdes=None,
        first_input_value_serdes_type=0,
        second_input_value_serdes=None,
        second_input_value_serdes_type=0,
        output_value_serdes=None,
        output_value_serdes_type=0,
    ):
        """Calls the op on each pair of co-partitioned partitions, both in key byte order."""
        n = self.num_partitions
        if other.num_partitions != n:
            raise ValueError(f"a binary map needs co-partitioned tables, not {n} and {other.num_partitions} partitions")
        out = self._ctx._create(n, key_serdes_type, output_value_serdes_type, partitioner_type)
        op = _copies(binary_map_partitions_with_index_op)
        for p in range(n):
            left, right = iter(self._t.partition(p)), iter(other._t.partition(p))
            out._t.put_partition(p, list(op()(p, left, right)))
        return out

    def reduce(self, func):
        """Folds the values with `func`: each partition in key order, then the partitions'
        results in partition order; None for an empty table."""
        results = []
        copies = _copies(func)
        for p in range(self.num_partitions):
            acc, f = None, copies()
            for _, v in self._t.partition(p):
                acc = v if acc is None else f(acc, v)
            if acc is not None:
                results.append(acc)
        if not results:
            return None
        acc = results[0]
        for r in results[1:]:
            acc = func(acc, r)
        return acc
