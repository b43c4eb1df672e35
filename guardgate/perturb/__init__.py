"""Degrading and marking what high-risk callers get (pipeline steps 7 and 9).

`transforms` is the set of degrade transforms a tier names, each a class in
the module of its job (`request`, `logprobs`, `reasoning`, `tarpit`,
`reroute`), all of the kind `degrade` describes. `marking` hands the
answer's text to the watermark (`watermark`); `send` compiles what a tier
does into a `Perturbation`; `texts` reads answers files for the detector.
"""
