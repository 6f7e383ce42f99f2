#!/usr/bin/env python3
"""Bureau process tools: update a ticket (a write tool) and undo that update (its compensation).

    python3 tools/tickets.py update    {"ticket": N, "status": "...", "note": "..."} on stdin
    python3 tools/tickets.py restore   {"arguments": {...}, "result": {...}} on stdin (what Bureau's
                                       rollback passes a compensation: the update's arguments and result)

Tickets live in tickets.json in $SUPPORT_DESK_DATA (default: the sample's data/ folder); a ticket not
there yet is "open". Every change is one line of tickets.log with the idempotency key Bureau passes in
$BUREAU_IDEMPOTENCY_KEY: the same key never changes a ticket twice (the second call answers with the
first one's result and "duplicate": true). Standard library only.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(message: str) -> int:
    print(f"tickets {sys.argv[1] if len(sys.argv) > 1 else ''}: {message}", file=sys.stderr)
    return 2


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("update", "restore"):
        print("usage: tickets.py update|restore (arguments as JSON on stdin)", file=sys.stderr)
        return 2
    op = sys.argv[1]
    key = os.environ.get("BUREAU_IDEMPOTENCY_KEY", "").strip()
    if not key:
        return fail("BUREAU_IDEMPOTENCY_KEY is not set (Bureau sets it for every call)")
    try:
        args = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        return fail(f"the arguments are not JSON: {e}")
    if not isinstance(args, dict):
        return fail("the arguments must be a JSON object")

    if op == "update":
        ticket, status, note = args.get("ticket"), args.get("status"), args.get("note")
        if not isinstance(status, str) or not status:
            return fail("'status' must be a non-empty string")
    else:
        update, result = args.get("arguments"), args.get("result")
        if not isinstance(update, dict) or not isinstance(result, dict):
            return fail('expected {"arguments": {...}, "result": {...}}: the update to undo, as Bureau passes it')
        ticket, status, note = result.get("ticket"), result.get("previous"), "restored: " + str(update.get("status"))
        if not isinstance(status, str):
            return fail("the update's result has no 'previous' status to restore")
    if not isinstance(ticket, int) or isinstance(ticket, bool) or ticket <= 0:
        return fail("'ticket' must be a positive integer")

    data_dir = os.environ.get("SUPPORT_DESK_DATA") or os.path.join(HERE, "..", "data")
    os.makedirs(data_dir, exist_ok=True)
    log, state_file = os.path.join(data_dir, "tickets.log"), os.path.join(data_dir, "tickets.json")

    tickets = {}
    if os.path.exists(state_file):
        with open(state_file, encoding="utf-8") as f:
            tickets = json.load(f)
    if os.path.exists(log):
        with open(log, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        seen = next((r for r in records if r.get("key") == key), None)
        if seen is not None:
            # The same key again: nothing changes twice. If it was the ticket's last change and a crash
            # came between the log line and the state, the state is written now.
            last = [r for r in records if r["result"]["ticket"] == ticket][-1]
            if last is seen and tickets.get(str(ticket), {}).get("status") != seen["result"]["status"]:
                tickets[str(ticket)] = {"status": seen["result"]["status"], "note": note}
                save(state_file, tickets)
            print(json.dumps({**seen["result"], "duplicate": True}))
            return 0
    previous = tickets.get(str(ticket), {}).get("status", "open")
    tickets[str(ticket)] = {"status": status, "note": note}
    result = {"ticket": ticket, "status": status, "previous": previous}

    # The log line first (fsync'd), then the state: a crash in between is repaired by a retry with the same key.
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"key": key, "op": op, "result": result}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    save(state_file, tickets)
    print(json.dumps(result))
    return 0


def save(state_file: str, tickets: dict) -> None:
    tmp = state_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(tickets, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, state_file)


if __name__ == "__main__":
    sys.exit(main())
