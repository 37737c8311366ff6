"""The chaos run's report as ``ratiowatch chaos`` prints it without ``--json``. Pure."""

from __future__ import annotations

from typing import Any

from .verify import failures

__all__ = ["format_report"]


def _notification_repeats(n: dict[str, Any]) -> list[str]:
    """The kill-window repeats, what they are and their evidence; then the failing repeats."""
    lines = []
    if n["kill_window_repeats"]:
        lines.append(f"kill-window repeats: {n['kill_window_repeats']} delivered twice, not counted as duplicated: "
                     f"{n['kill_window_why']}.")
        lines += [f"  event {k['event_id']} ({k['channel']}): 200 at {k['first_delivery_s']}s, worker SIGKILLed at "
                  f"{k['kill_s']}s ({k['gap_ms']:g} ms later, before the dedup record), restarted at "
                  f"{k['restart_s']}s, sent again: 200 at {k['second_delivery_s']}s"
                  for k in n["kill_window_evidence"]]
    for d in n["examples_duplicated"]:
        kill = d["next_kill_after_first_s"]
        lines.append(f"notification repeated: event {d['event_id']} ({d['channel']}), 200 at "
                     + ", ".join(f"{t}s" for t in d["deliveries_s"])
                     + ("; no kill after the first" if kill is None else f"; next kill {kill:g}s after the first"))
    return lines


def format_report(r: dict[str, Any]) -> str:
    t, e, n, rec = r["ticks"], r["events"], r["notifications"], r["recovery_s"]
    lines = [
        f"chaos run: {r['run']['dates']} dates {r['run']['first_date']}..{r['run']['last_date']}, seed {r['run']['seed']}, "
        f"{r['run']['seconds']}s, worker started {r['run']['worker_starts']}x",
        f"ticks:         sent {t['sent']} ({t['valid']} valid, {t['invalid']} bad), applied {t['applied']}, "
        f"dead-lettered {t['dead_lettered']}, lost {t['lost']}  (dlq repeats {t['dlq_duplicates']}, "
        f"wrong reason {t['dlq_wrong_reason']}, unwitnessed {t['unwitnessed']})",
        f"events:        expected {e['expected']}, emitted {e['emitted']}, duplicated {e['duplicated']}, "
        f"missing {e['missing']}, unexpected {e['unexpected']}  (broker retry copies {e['broker_retry_copies']})",
        f"notifications: expected {n['expected']}, delivered {n['delivered']}, duplicated {n['duplicated']}, "
        f"dead-lettered {n['dead_lettered']}, lost {n['lost']}  (kill-window repeats {n['kill_window_repeats']})",
        f"               events out while the endpoint failed: {e['during_endpoint_faults']}",
        "faults:        " + ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items())),
        f"recovery:      max {rec['max']}s, median {rec['median']}s"
        + (f", {rec['never']} never recovered" if rec["never"] else "")
        + "; by kind " + ", ".join(f"{k} {v:g}s" for k, v in sorted(rec["max_by_kind"].items())),
    ]
    if e["examples_missing"]:
        lines.append("missing e.g.:  " + "; ".join(e["examples_missing"]))
    if e["examples_duplicated"]:
        lines.append("repeated e.g.: " + ", ".join(e["examples_duplicated"]))
    if e["broker_retry_copies"]:
        lines.append(f"broker retry copies: {e['broker_retry_copies']} records, not counted as duplicated: "
                     f"{e['broker_retry_why']}.")
        lines += [f"  partition {b['partition']} offsets {b['offsets'][0]}-{b['offsets'][1]} again at "
                  f"{b['copy_offsets'][0]}-{b['copy_offsets'][1]} (same values and record times), read at "
                  f"{b['copy_read_at_s']}s after {', '.join(b['faults_before']) or 'no fault'}"
                  for b in e["broker_retry_blocks"]]
    lines += _notification_repeats(n)
    if r["worker_exits_unplanned"]:
        lines += ["unplanned worker exits:"] + [f"  {x}" for x in r["worker_exits_unplanned"]]
    aside = []
    if e["broker_retry_copies"]:
        aside.append(f"{e['broker_retry_copies']} broker retry copies")
    if n["kill_window_repeats"]:
        aside.append(f"{n['kill_window_repeats']} kill-window repeats")
    copies = f" ({', '.join(aside)} aside, above)" if aside else ""
    lines.append(f"PASS: nothing lost, missing or duplicated{copies}" if r["passed"]
                 else "FAIL: " + ", ".join(failures(r)))
    return "\n".join(lines)
