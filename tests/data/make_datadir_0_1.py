"""How tests/data/datadir-0.1 was made, with the 0.1.0 code at commit e69564b (schema without a version):
one image job, a library item, a kept link, and a job still queued at the stop.

    git worktree add /tmp/v01 e69564b && cd /tmp/v01 && PYTHONPATH=. python ../main/tests/data/make_datadir_0_1.py OUT MODELS
"""
import json, sys, shutil
from pathlib import Path
from enfoads.engine import build_engine
from enfoads.settings import Settings
from enfoads.library import client_identity
out = Path(sys.argv[1]); models = Path(sys.argv[2])
shutil.rmtree(out, ignore_errors=True)
e = build_engine(Settings(profile="tiny", models_dir=models, data_dir=out, auto_download="off", warm="off", api_key="fixture-key-0123456789"))
job = e.submit_and_wait("image.generate", {"prompt": "a blue bottle", "seed": 11, "preview_every": 0}, timeout=120)
assert job.state == "succeeded", job.error
aid = job.result["image_asset_id"]
e.library.add("client-a", {"id": 1, "type": "image", "content": "data:image/png;base64,AAAA", "prompt": "a blue bottle", "createdAt": 1764547200000}, media_asset_id=aid)
expires, sig = e.assets.sign(aid, ttl_s=60)
assert e.assets.keep_link(aid, expires, sig)
e.close()
# A job still queued when the old release stopped: the upgraded server must run it.
e = build_engine(Settings(profile="tiny", models_dir=models, data_dir=out, auto_download="off", warm="off", api_key="fixture-key-0123456789"), start=False)
queued = e.submit("image.generate", {"prompt": "a green bottle", "seed": 12, "preview_every": 0})
e.close()
print(json.dumps({"job": job.id, "asset": aid, "queued": queued.id, "expires": expires, "sig": sig}))
