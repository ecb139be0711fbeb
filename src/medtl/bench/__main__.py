"""``python -m medtl.bench --worker SPEC_JSON``: one medtl measurement in this process."""

from medtl.bench.worker import main

raise SystemExit(main())
