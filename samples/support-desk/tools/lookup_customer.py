#!/usr/bin/env python3
"""Bureau process tool: look a customer up by email.

Reads the arguments as JSON on stdin ({"email": "..."}), prints the result as JSON on stdout.
Customers come from ../data/customers.json (next to this script). Standard library only.
"""
import json
import os
import sys

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "customers.json")


def main() -> int:
    try:
        args = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        print(f"lookup_customer: the arguments are not JSON: {e}", file=sys.stderr)
        return 2
    email = args.get("email") if isinstance(args, dict) else None
    if not isinstance(email, str) or not email.strip():
        print('lookup_customer: expected {"email": "..."}', file=sys.stderr)
        return 2
    email = email.strip().lower()
    with open(DATA, encoding="utf-8") as f:
        customers = json.load(f)
    customer = customers.get(email)
    if customer is None:
        result = {"found": False, "email": email}
    else:
        result = {"found": True, "email": email, **customer}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
