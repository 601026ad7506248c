import { defineCommand } from "citty"; export default defineCommand({ meta: { name: "run" }, run() { throw new Error("run: not yet"); } });
