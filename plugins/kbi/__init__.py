"""The domain package of the KBI distribution: plain Python, testable without a scheduler.

Rule ids (P1…P14) refer to the protocol requirements in the README; each module names the rules
it enforces.
"""
