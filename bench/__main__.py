"""`python -m bench` is the same as the `bench` console command."""

from bench.cli import main

raise SystemExit(main())
