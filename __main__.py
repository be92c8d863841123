"""`python -m xfbench` (and `torchrun -m xfbench`): the same CLI as the `xfbench` command."""

from xfbench.cli.main import main

if __name__ == "__main__":
    main()
