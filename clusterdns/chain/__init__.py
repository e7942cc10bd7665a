"""The plugin framework: request, writer, handler contract, order, fast-path table, builder."""
