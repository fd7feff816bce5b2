#!/usr/bin/env python3
"""A TCP proxy on loopback that adds a fixed one-way delay in each direction.

This kernel has no netem, so benchmarks that need round-trip time (a WAN between sites) put
this between client and server. Every chunk is forwarded `delay` seconds after it arrived,
without holding back the chunks behind it: bandwidth stays what loopback gives, each round
trip costs 2 x delay more.

    delay_proxy.py --listen-port-file F --target-port-file G --rtt-ms 20

The target's port is read from G at each connection, so the proxy can start first and the
server be told the proxy's address as its public base URL.
"""
import argparse
import asyncio
import collections
import os


async def pump(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds late; EOF travels as late."""
    loop = asyncio.get_running_loop()
    queue = collections.deque()
    arrived = asyncio.Event()

    async def receive():
        while True:
            try:
                chunk = await reader.read(256 * 1024)
            except ConnectionError:
                chunk = b""
            queue.append((loop.time() + delay, chunk))
            arrived.set()
            if not chunk:
                return

    receiving = asyncio.create_task(receive())
    try:
        while True:
            while not queue:
                arrived.clear()
                await arrived.wait()
            due, chunk = queue.popleft()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        receiving.cancel()


async def serve(args):
    delay = args.rtt_ms / 2000.0

    async def on_client(client_reader, client_writer):
        try:
            with open(args.target_port_file) as f:
                port = int(f.read())
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", port)
        except (OSError, ValueError):
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer, delay),
                             pump(server_reader, client_writer, delay))
        for w in (client_writer, server_writer):
            w.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, backlog=1024)
    listen_port = server.sockets[0].getsockname()[1]
    tmp = args.listen_port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{listen_port}\n")
    os.rename(tmp, args.listen_port_file)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-port-file", required=True,
                        help="file holding the loopback port to forward to")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round-trip time to add")
    parser.add_argument("--listen-port-file", required=True, help="where to write our port")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
