"""A frozen, verbatim copy of src/mnistbench/scratch as it stood before issue 15 (commit 62b8d86): the oracle of
tests/test_scratch_bytes.py. Only the imports were rewritten to point here. Never edit these files: the default
params (a 784-128-10 ReLU network, SGD without momentum, Adam without weight decay, a constant learning rate)
must give, through today's code, exactly the bytes this code gives on the same machine.
"""
