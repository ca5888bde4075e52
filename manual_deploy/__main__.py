from manual_deploy.cli import main

raise SystemExit(main())
