"""``momu presets``: list output presets, show one, or print where its receiver files are."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("presets", help="list output presets (ableton, touchdesigner, blender, puredata, ...)",
                              description="Output presets for `momu live --preset NAME`: OSC targets and grammar "
                                          "style, MIDI, reply listeners and receiver files.")
    p.add_argument("action", nargs="?", choices=["list", "show", "path"], default="list",
                   help="list (default), show NAME (the JSON and setup steps), path NAME (receiver files)")
    p.add_argument("name", nargs="?", help="preset name or path to a preset .json")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from momu_live import MomuError
    from momu_live.bridge.preset import list_presets, load_preset, preset_path, presets_dir

    if args.action == "list":
        rows = [load_preset(n) for n in list_presets()]
        if args.json:
            print(json.dumps([{"name": r["name"], "description": r.get("description", ""),
                               "targets": [f"{t['host']}:{t['port']} ({t['style']})" for t in r["targets"]]}
                              for r in rows], indent=2))
            return 0
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            dests = ", ".join(f"{t['style']}->{t['host']}:{t['port']}" for t in r["targets"])
            print(f"{r['name']:<{width}}  {r.get('description', '')}\n{'':<{width}}  OSC: {dests}"
                  + ("  MIDI: on" if r["midi"]["enabled"] else ""))
        return 0
    if not args.name:
        raise MomuError(f"`momu presets {args.action}` needs a preset name; presets: {', '.join(list_presets())}")
    d = load_preset(args.name)
    if args.action == "path":
        print(preset_path(args.name))
        for f in d.get("files", []):
            print(presets_dir() / f)
        return 0
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"{d['name']}: {d.get('description', '')}")
    print(f"file: {preset_path(args.name)}")
    for t in d["targets"]:
        print(f"  OSC target {t['name']}: {t['host']}:{t['port']} style={t['style']} events={','.join(t['events'])}"
              + ("  [primary: --osc-host/--osc-port]" if t["primary"] else ""))
    m = d["midi"]
    if m["enabled"]:
        print(f"  MIDI: {'virtual port' if m['virtual'] else 'port matching'} {m['port']!r}, clock={m['clock']}, "
              f"beat notes={m.get('notes') or 'off'}")
    if d["listen"]["enabled"]:
        print(f"  replies: listens on {d['listen']['host']}:{d['listen']['port']}")
    for f in d.get("files", []):
        print(f"  receiver: {presets_dir() / f}")
    for i, s in enumerate(d.get("setup", []), 1):
        print(f"  {i}. {s}")
    return 0
