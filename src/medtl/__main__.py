from medtl.cli.parser import main

raise SystemExit(main())
