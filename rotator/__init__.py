"""The knockd_rotator scheme: pure functions, standard library only, no I/O.

``rotator.scheme`` holds the whole compatibility contract in one file that can be
copied alone onto a phone; ``rotator.knockdconf`` parses and rewrites knockd.conf
(text in, text out); ``rotator.apply`` is the only module with side effects.
"""
