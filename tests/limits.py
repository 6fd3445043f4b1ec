"""How long a test waits on a subprocess before calling it hung.

These limits catch hangs; they are not speed goals (those live in benchmarks/). They are sized
for a loaded machine: on 2 cores beside two other busy processes the quick demo runs 3-5x
slower than on a quiet machine, so a limit that is generous there is the right one.
"""

HANG = 1800  # seconds
