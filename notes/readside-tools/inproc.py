import os, sys, time, collections
sys.path.insert(0, "/work/wt-readside")
from interfaces.container import build
from interfaces.settings import load_settings
from bench.read_side import store_read_rate
c = build(load_settings())
for r in range(2):
    lim = store_read_rate(dict(os.environ)); t = time.perf_counter()
    collections.deque(c.history.export(), maxlen=0); s = time.perf_counter() - t
    lim = (lim + store_read_rate(dict(os.environ))) / 2
    print(f"in-process export: {s:.2f}s ratio {100000/s/lim:.2f} (store {lim:,.0f})", flush=True)
c.close()
