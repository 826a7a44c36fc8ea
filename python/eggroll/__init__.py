"""eggroll-rs's `eggroll` module: the surface FATE's eggroll computing back end imports
(`eggroll.session.session_init`, `eggroll.computing.runtime_init` and `RollPair`), on
eggroll-rs byte tables.

Without a cluster manager address a session is embedded: eggroll-rs's standalone engine in
this process, its tables under `$EGGROLL_HOME/data` (default `~/.eggroll-rs/data`). With
`host` and `port` it is a session on an eggroll-rs cluster.
"""

__all__ = ["session", "computing"]
