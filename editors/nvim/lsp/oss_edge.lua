-- oss-edge as a Neovim 0.11+ LSP configuration: `vim.lsp.enable('oss_edge')` is all it takes.
-- Settings come from require('oss_edge').setup{ settings = {...} } when called, else the server's defaults.
local config = require('oss_edge.config')

---@type vim.lsp.Config
return {
  cmd = function(dispatchers)
    return vim.lsp.rpc.start(config.options.cmd, dispatchers)
  end,
  filetypes = config.options.filetypes,
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'Cargo.toml', 'go.mod' },
  init_options = config.options.settings,
  settings = { ossEdge = config.options.settings },
  handlers = {
    ['ossEdge/explanation'] = function(_, note)
      require('oss_edge.explain').on_note(note)
    end,
  },
  on_attach = function(client, bufnr)
    require('oss_edge').attach(client, bufnr)
  end,
}
