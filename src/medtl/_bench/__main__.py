"""``python -m medtl._bench --worker SPEC_JSON``: one medtl measurement in this process."""

from medtl._bench.worker import main

raise SystemExit(main())
