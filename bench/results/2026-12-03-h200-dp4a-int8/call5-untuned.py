import contextlib, sys
from kochat import row_sums
row_sums.one_row_tuning = lambda model, rows: contextlib.nullcontext()
from bench import quant_kernels
quant_kernels.main(sys.argv[1:])
