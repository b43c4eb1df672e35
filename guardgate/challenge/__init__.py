"""Pipeline step 5: proof-of-work challenges that API clients and browsers
can both solve.

`tokens` signs challenges and clearances, `puzzle` is the work, `gate`
decides whether a request passes, `page` is the browser side. The client
side is `guardgate.client`.
"""
