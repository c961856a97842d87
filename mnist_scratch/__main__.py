__all__ = []

# %% ../nbs/92_cli.ipynb #0520e6af
from .cli import main
if __name__ == '__main__' and __package__ == 'mnist_scratch': raise SystemExit(main()) # only as `python -m mnist_scratch`