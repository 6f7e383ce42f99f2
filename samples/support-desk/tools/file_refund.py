#!/usr/bin/env python3
"""Bureau process tool: file a refund (a write tool).

Reads {"order": N, "amount": X, "email": "..."} as JSON on stdin. Appends one line per refund to
refunds.log in $SUPPORT_DESK_DATA (default: the sample's data/ folder) with the idempotency key
Bureau passes in $BUREAU_IDEMPOTENCY_KEY. The same key never writes twice: a second call with a
key already in the log writes nothing and answers with the refund filed the first time
("duplicate": true). Standard library only.
"""
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    key = os.environ.get("BUREAU_IDEMPOTENCY_KEY", "").strip()
    if not key:
        print("file_refund: BUREAU_IDEMPOTENCY_KEY is not set (Bureau sets it for every call)", file=sys.stderr)
        return 2
    try:
        args = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        print(f"file_refund: the arguments are not JSON: {e}", file=sys.stderr)
        return 2
    if not isinstance(args, dict):
        print("file_refund: the arguments must be a JSON object", file=sys.stderr)
        return 2
    order, amount, email = args.get("order"), args.get("amount"), args.get("email")
    if not isinstance(order, int) or isinstance(order, bool) or order <= 0:
        print("file_refund: 'order' must be a positive integer", file=sys.stderr)
        return 2
    if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount <= 0:
        print("file_refund: 'amount' must be a positive number", file=sys.stderr)
        return 2
    if not isinstance(email, str) or "@" not in email:
        print("file_refund: 'email' must be an email address", file=sys.stderr)
        return 2

    data_dir = os.environ.get("SUPPORT_DESK_DATA") or os.path.join(HERE, "..", "data")
    os.makedirs(data_dir, exist_ok=True)
    log = os.path.join(data_dir, "refunds.log")

    if os.path.exists(log):
        with open(log, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                record = json.loads(line)
                if record.get("key") == key:
                    print(json.dumps({**record["refund"], "duplicate": True}))
                    return 0

    refund_id = "RF-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8].upper()
    refund = {"refund_id": refund_id, "status": "filed", "order": order, "amount": amount, "email": email}
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"key": key, "args": args, "refund": refund}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    print(json.dumps(refund))
    return 0


if __name__ == "__main__":
    sys.exit(main())
