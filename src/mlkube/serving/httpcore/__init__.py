"""The HTTP/1.1 core the replica server and the load balancer share.

One reader of requests (``connection.HttpServerConnection``): httptools parses, and the core
enforces the limits the moment they are crossed, the header, body and idle timeouts, Host
and transfer-coding rules, and ends a refused request with a lingering close. One error
table (``errors``): every status either side sends itself, in the ``{"error": "<message>"}``
shape. Routing, pipelining order and what a request becomes are the users' business.
"""
