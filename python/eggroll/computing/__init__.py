"""Computing: `runtime_init`, the roll-pair context and `RollPair`, as FATE's eggroll computing
back end calls them. Keys and values are bytes FATE serialized; a table keeps FATE's serdes
and partitioner codes, and places keys with FATE's partitioner (mmh3 or integer) natively.

Functions are pickled (cloudpickle) into the tasks of eggroll-rs's two primitives and run
where the partitions are: in the Python eggs of a cluster session, or, for an embedded one,
in this process's worker pool (`_runner`). Each partition unpickles its own copy (a stateful
function starts afresh per partition). Pairs are read, shuffled and written by eggroll-rs,
with Python's lock released.
"""

import threading

import cloudpickle

from eggroll import _native
from eggroll.computing._functions import FirstPerKey, FoldPartition, FoldTagged

IN_MEMORY = "IN_MEMORY"

# Guards the pushes' holds on tables (few and short: one lock for all).
_holds_lock = threading.Lock()


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


class RollPair:
    """A table of (key bytes, value bytes) pairs."""

    def __init__(self, table, ctx):
        self._t = table
        self._ctx = ctx
        self._store = Store(table)
        # Pushes to other parties still reading the table, and a destroy asked for meanwhile.
        # Owned: destroyed when dropped even if persistent (a table received from a party).
        self._owned = False
        self._holds = 0
        self._destroy_pending = False

    def __getstate__(self):
        raise TypeError("a RollPair cannot be pickled: pass the data, not the table, to functions")

    def __del__(self):
        # FATE makes hundreds of intermediate tables per job and drops them: an in-memory
        # table no longer referenced is destroyed at once (a persistent one stays). Each
        # RollPair is the only one of its in-memory store, so no other can still need it.
        t = getattr(self, "_t", None)
        if t is None or t.destroyed:
            return
        if self._store.store_type != IN_MEMORY and not getattr(self, "_owned", False):
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
        sorted; eggroll-rs merges them)."""
        return iter(self._t.get_all_sorted(limit))

    def count(self):
        return self._t.count()

    def take(self, num, options=None, **kwargs):
        """The first `num` pairs in key byte order: the first `num` of each partition, merged."""
        if num <= 0:
            raise ValueError(f"take needs a positive count, not {num}")
        return self._t.take_sorted(int(num))

    def destroy(self):
        """Removes the table; while a push to another party still reads it, once that is done
        (FATE does not wait for its pushes before it destroys what it sent)."""
        with _holds_lock:
            if self._holds:
                self._destroy_pending = True
                return None
        return self._t.destroy()

    def _hold(self):
        """Keeps the table from being destroyed until `_release`."""
        with _holds_lock:
            self._holds += 1

    def _release(self):
        with _holds_lock:
            self._holds -= 1
            destroy = self._holds == 0 and self._destroy_pending and not self._t.destroyed
        if destroy and not self._ctx.session.is_stopped():
            self._t.destroy()

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
        """Maps each partition with its index, in the eggs; with `shuffle`, pairs move to the
        partition of their key, and values of one key are combined by `reduce_partition_op`
        in the order FATE's standalone engine combines them; without, a partition's output
        stays in it.

        Without a reducer, each source partition gives a key the first value its map made
        (as on FATE's standalone engine); of several sources, one wins."""
        n_in = self.num_partitions
        n_out = int(output_num_partitions or n_in)
        if not shuffle and n_out != n_in:
            raise ValueError(f"a map without shuffle keeps {n_in} partitions, not {n_out}")
        made = dict(
            key_serdes_type=int(output_key_serdes_type),
            value_serdes_type=int(output_value_serdes_type),
            partitioner_type=int(output_partitioner_type),
            namespace=output_namespace or self._ctx.session_id,
            name=output_name,
            store_type=output_store_type or IN_MEMORY,
        )
        out = RollPair(self._t.create_like(n_out, **made), self._ctx)
        # With a reducer, the eggs fold each key's values in FATE standalone's order (source
        # partition, then the map's), value by value as it does: floats come out the same.
        mapper = map_partition_op
        if shuffle and reduce_partition_op is None:
            mapper = FirstPerKey(map_partition_op)
        if shuffle and reduce_partition_op is not None:
            # The fold runs in Python a partition at a time: called from Rust pair by pair,
            # each call took Python's lock, and 100,000 pairs took 1.3 s instead of 0.13 s.
            fold = FoldTagged(reduce_partition_op, _native.SEQUENCE_TAG_BYTES)
            self._t.map_reduce_folding(cloudpickle.dumps(mapper), cloudpickle.dumps(fold), out._t)
            return out
        combiner = None if reduce_partition_op is None else cloudpickle.dumps(reduce_partition_op)
        self._t.map_reduce(cloudpickle.dumps(mapper), bool(shuffle), combiner, out._t)
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
        """Calls the op, in the eggs, on each pair of co-partitioned partitions, both in key
        byte order."""
        n = self.num_partitions
        if other.num_partitions != n:
            raise ValueError(f"a binary map needs co-partitioned tables, not {n} and {other.num_partitions} partitions")
        out = RollPair(
            self._t.create_like(
                n,
                key_serdes_type=int(key_serdes_type),
                value_serdes_type=int(output_value_serdes_type),
                partitioner_type=int(partitioner_type),
                namespace=self._ctx.session_id,
            ),
            self._ctx,
        )
        self._t.merge_partitions(other._t, cloudpickle.dumps(binary_map_partitions_with_index_op), out._t)
        return out

    def reduce(self, func):
        """Folds the values with `func`: each partition in key order in its egg, then the
        partitions' results in partition order here; None for an empty table."""
        # The partials come back with the job's answer: no table to make, read and drop.
        acc = None
        for n, (_, v) in enumerate(self._t.map_to_caller(cloudpickle.dumps(FoldPartition(func)))):
            acc = v if n == 0 else func(acc, v)
        return acc
