"""``momu data pack``: compact fp16 training arrays (mel + model-rate motion) of a DwM-format folder."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pack", help="pack paired dances into compact fp16 arrays for training (GPU box: numpy + torch only)",
        description="Write OUT/pack.npz: per dance fp16 log-mel (80, 8L) and canonical motion (2L, 18, 3) at the model "
                    "rate, cropped to L whole latent frames, with genre and train/val split (models/packing.py).",
    )
    p.add_argument("--data", required=True, help="DwM-format folder (index.csv, skeleton.json, <id>/...)")
    p.add_argument("--out", required=True, help="output folder (e.g. .carry/pack)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from momu_live.models.packing import load_pack, pack_dwm

    path = pack_dwm(args.data, args.out, progress=not args.no_progress)
    dances = load_pack(path)
    n_val = sum(d.split == "val" for d in dances)
    mb = path.stat().st_size / 2**20
    print(f"wrote {path}: {len(dances)} dances ({n_val} val), {sum(d.n_latent for d in dances)} latent frames, {mb:.1f} MiB")
    return 0
