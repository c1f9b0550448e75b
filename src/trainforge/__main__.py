from trainforge.cli import main

raise SystemExit(main())
