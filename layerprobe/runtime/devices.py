"""Devices: the one list of device choices every stage offers."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")  # auto = CUDA when a GPU is visible, else the CPU
