from dlprof.cli import main

if __name__ == "__main__":  # not when a worker started by spawn imports the main module again
    raise SystemExit(main())
