"""Prototype (not in the branch): the export with decoding and opening in worker processes,
to see what a second core buys. Session owners are not resolved (the seeded store has none)."""
import os, sys, time, collections, multiprocessing as mp
sys.path.insert(0, "/work/wt-readside")
from bench.read_side import store_read_rate

_entries = None

def init():
    global _entries, _c
    from interfaces.container import build
    from interfaces.settings import load_settings
    from application.history import History, _SessionOwners
    _c = build(load_settings())
    h = History(_c.log)
    _entries = h._entries_reader(_SessionOwners(_c.log, 10_000))

def work(batch):
    from eventsourcing.persistence import Notification
    from application.trail import is_trail_topic
    ns = [Notification(id=i, originator_id=o, originator_version=v, topic=t, state=s) for i, o, v, t, s in batch if is_trail_topic(t)]
    return _entries(ns)

def main(workers):
    from interfaces.container import build
    from interfaces.settings import load_settings
    from application.trail_export import chained
    c = build(load_settings())
    rec = c.log.recorder
    last = rec.max_notification_id()
    def batches():
        start = 1
        while start <= last:
            b = rec.select_notifications(start=start, limit=500, stop=last)
            if not b: return
            yield [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in b]
            start = b[-1].id + 1
    t = time.perf_counter()
    with mp.get_context("fork").Pool(workers, initializer=init) as pool:
        def entries():
            for es in pool.imap(work, batches(), chunksize=1):
                erased = c.log.keys.forgotten({e.account_id for e in es if e.sealed and e.account_id})
                for e in es:
                    yield e.erased() if e.account_id in erased else e
        with open("/tmp/rs/trail-par.jsonl", "w") as f:
            for line in chained(entries()):
                f.write(line + "\n")
    return last, time.perf_counter() - t

if __name__ == "__main__":
    for w in (1, 2):
        lim = store_read_rate(dict(os.environ))
        n, s = main(w)
        lim = (lim + store_read_rate(dict(os.environ))) / 2
        print(f"workers {w}: {s:.2f}s {n/s:,.0f} ev/s ratio {n/s/lim:.2f} (store {lim:,.0f})", flush=True)
