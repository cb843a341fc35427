"""Seed a stopped centre's SQLite database for bench/console.sh: DEVICES in-service
devices across 100 organisations, SESSIONS live sessions between pairs of them, each
with an "up" report from both ends. Only tables the pages read are filled; the audit
chain is not touched, so the centre still verifies it at start."""

import json
import sqlite3
import sys
import time

db, devices, sessions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
now = int(time.time() * 1000)
con = sqlite3.connect(db)
orgs = [(f"org-bench{i:04d}", f"Bench Hospital {i}", "hospital" if i % 10 == 0 else "clinic") for i in range(100)]
con.executemany(
    "INSERT INTO orgs (id, name, kind, checksheet_passed, policy, created_ms) VALUES (?, ?, ?, 0, '{}', ?)",
    [(o, n, k, now) for o, n, k in orgs],
)
rows = []
for i in range(devices):
    org = orgs[i % len(orgs)][0]
    rows.append((f"dev-bench{i:06d}", f"SN-BENCH-{i:06d}", "DV-100", org, "in_service",
                 json.dumps([f"10.{(i >> 8) & 255}.{i & 255}.0/24"]), now, now))
con.executemany(
    "INSERT INTO devices (id, serial, model, owner_org, status, subnets, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    rows,
)
sess, reports = [], []
for i in range(sessions):
    a, b = f"dev-bench{(2 * i) % devices:06d}", f"dev-bench{(2 * i + 1) % devices:06d}"
    lo, hi = sorted((a, b))
    sid = f"{i:016x}{(i * 7919) & 0xffffffffffffffff:016x}"
    sess.append((sid, lo, hi, json.dumps([f"grant-bench{i:06d}"]), "up", now - 60000, now))
    for reporter in (lo, hi):
        reports.append((sid, reporter, "up", now // 1000 - 60, json.dumps([f"grant-bench{i:06d}"]), 1000, 2000, 10, 20, now))
con.executemany(
    "INSERT INTO sessions (id, device_lo, device_hi, grant_ids, status, first_ms, last_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
    sess,
)
con.executemany(
    "INSERT INTO session_reports (session_id, reporter, event, at, grant_ids, bytes_in, bytes_out, packets_in, packets_out, received_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    reports,
)
con.commit()
print(f"seeded {len(orgs)} organisations, {len(rows)} devices, {len(sess)} sessions, {len(reports)} reports")
