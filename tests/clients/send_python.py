"""Send track calls with Segment's Python library (segment-analytics-python).

usage: send_python.py CLIENTS_DIR HOST WRITE_KEY COUNT PREFIX [gzip]
Prints "error ..." on stderr for every batch the library failed to deliver; exits 0.
"""
import sys
from datetime import datetime, timezone

clients, host, write_key, count, prefix = sys.argv[1:6]
sys.path.insert(0, clients)
import segment.analytics as analytics  # noqa: E402

analytics.write_key = write_key
analytics.host = host
analytics.max_retries = 1
analytics.gzip = len(sys.argv) > 6 and sys.argv[6] == "gzip"
analytics.on_error = lambda error, batch: print(f"error {error} ({len(batch)} messages)", file=sys.stderr)

for i in range(int(count)):
    analytics.track(
        user_id=f"user-{i}",
        event="Order Completed",
        message_id=f"{prefix}-{i}",
        timestamp=datetime.now(timezone.utc),
        properties={"revenue": 10 + i, "currency": "USD"},
        context={
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
            "ip": "203.0.113.7",
            "page": {"url": "https://shop.example/checkout"},
            "traits": {"email": f"buyer{i}@example.com"},
        },
    )
analytics.flush()
analytics.shutdown()
