-- Options of the oss-edge plugin. `settings` are the server's (camelCase, see :help oss-edge-settings).
local M = {}

M.defaults = {
  -- The command that starts the language server.
  cmd = { 'oss-edge', 'lsp' },
  -- nil: every filetype.
  filetypes = nil,
  -- Ghost-text inline completion where Neovim has it (0.12+); completion items otherwise.
  inline = true,
  -- Passed to the server as initializationOptions.
  settings = {},
  -- Border of the explanation window.
  border = 'rounded',
}

M.options = vim.deepcopy(M.defaults)

function M.setup(opts)
  M.options = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  vim.lsp.config('oss_edge', {
    cmd = M.options.cmd,
    filetypes = M.options.filetypes,
    init_options = M.options.settings,
    settings = { ossEdge = M.options.settings },
  })
  return M.options
end

return M
